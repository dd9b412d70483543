from equisweep.cli import main

main()
