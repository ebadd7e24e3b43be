from streams.shipment.cli import main

raise SystemExit(main())
