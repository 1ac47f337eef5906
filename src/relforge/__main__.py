from relforge.cli import main

raise SystemExit(main())
