from semantic_router.cli import main

main()
