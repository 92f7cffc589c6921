from edgesewer.cli import main

main()
