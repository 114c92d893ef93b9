from local_stack.cli import main

main()
