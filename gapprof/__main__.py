from gapprof.cli import main

main()
