"""`python -m lang` is `evt`."""

from lang.cli import main

if __name__ == "__main__":
    main()
