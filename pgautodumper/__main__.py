from pgautodumper.cli import main

main()
