from .writing import main

main()
