from streams.modules.shipment.cli import main

raise SystemExit(main())
