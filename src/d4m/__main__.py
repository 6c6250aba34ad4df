try:
    from d4m.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the command's modules load
    raise SystemExit(130) from None

raise SystemExit(main())
