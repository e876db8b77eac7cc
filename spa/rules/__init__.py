"""The channel rules, one module per op family. Importing this package registers them all.

To support a new op: add a `Rule` subclass to the module of its family (or a new module imported here),
list its op types in `ops`, describe its channel flow in `couple` and, if it has attributes or shape
constants that count channels, fix them in `rewrite`. Unknown ops freeze every slot they touch.
"""

from . import control, elementwise, linear, msft, norm, quant, recurrent, reduce, shape  # noqa: F401
from .base import REGISTRY, Rule, rule_for  # noqa: F401
