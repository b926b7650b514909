"""`python -m lang` is `evt`."""

from .cli import main

if __name__ == "__main__":
    main()
