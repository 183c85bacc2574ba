from cqrskit.cli._main import main

main()
