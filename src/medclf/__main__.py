from medclf.cli import main

main()
