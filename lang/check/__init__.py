"""The static checks: every problem a script has before it runs, each with its span.

- checker: the Checker (declarations, then bodies), `check` for a whole program
- literals: the value of a constant expression
"""

from lang.check.checker import Checker, SceneSymbols, Symbols, check
from lang.check.literals import NOT_LITERAL, literal_value

__all__ = ["NOT_LITERAL", "Checker", "SceneSymbols", "Symbols", "check", "literal_value"]
