from avgen.app.cli import main

main()
