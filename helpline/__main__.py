from helpline.cli import main

raise SystemExit(main())
