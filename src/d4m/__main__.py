from d4m.cli.main import main

raise SystemExit(main())
