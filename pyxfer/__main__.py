from pyxfer.cli import main

raise SystemExit(main())
