"""The channel rules, one module per op family, and the default rule set built from them.

To support a new op: add a `Rule` subclass to the module of its family (or a new module listed here), name its
op types in `ops`, describe its channel flow in `couple` and, if it has attributes or shape constants that count
channels, fix them in `rewrite`; give it the optional hooks it needs (`macs`, `consumer`, `mask_statistics`,
see rules.base.Rule). List the class in its module's `RULES`. Unknown ops freeze every slot they touch.

A user adds or replaces rules at call time without touching spa: `spa.analyze(model, rules=[MyRule()])`
(also `prune`, `check`): a rule passed there replaces the default one for each op it claims.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from . import control, elementwise, linear, msft, norm, quant, recurrent, reduce, shape
from .base import NodeCtx, RewriteCtx, Rule, RuleSet, registered
from .hooks import ConsumerSpec, StatsMask

# the default rules in a fixed order: the op families, then any rule still added with the deprecated `register`
DEFAULT_RULES: tuple[type[Rule], ...] = (
    *elementwise.RULES, *linear.RULES, *norm.RULES, *reduce.RULES, *shape.RULES, *quant.RULES,
    *recurrent.RULES, *msft.RULES, *control.RULES, *registered(),
)
DEFAULT = RuleSet(DEFAULT_RULES)

RulesLike = RuleSet | Iterable[Rule | type[Rule]] | None  # what `rules=` of analyze()/check() takes


def rule_set(rules: RulesLike = None) -> RuleSet:
    """The rules an analysis uses: the defaults (None), the defaults with `rules` added (a rule for an op the
    defaults also cover replaces the default one; two given rules claiming one op are refused), or a whole
    `RuleSet` as given (e.g. `DEFAULT.without("LSTM")`)."""
    if rules is None:
        return DEFAULT
    if isinstance(rules, RuleSet):
        return rules
    return DEFAULT.extended(rules)


def rule_for(node: onnx.NodeProto) -> Rule | None:
    """The default rule for `node` (None: no rule, its slots freeze)."""
    return DEFAULT.rule_for(node)


__all__ = ["DEFAULT", "DEFAULT_RULES", "ConsumerSpec", "NodeCtx", "RewriteCtx", "Rule", "RuleSet", "RulesLike",
           "StatsMask", "rule_for", "rule_set"]
