from fagan.cli import main

raise SystemExit(main())
