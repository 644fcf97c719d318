"""Stand-ins for ``launch.conditions``: IfCondition and UnlessCondition."""

from __future__ import annotations

from rpl_bringup.launch_shim.core import (
    Condition,
    LaunchContext,
    LaunchError,
    SomeSubstitutionsType,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)


def _truth(text: str) -> bool:
    value = text.strip().lower()
    if value in ('true', '1'):
        return True
    if value in ('false', '0'):
        return False
    raise LaunchError(f'condition must evaluate to true/false/1/0, got {text!r}')


class IfCondition(Condition):
    """True when the expression evaluates to 'true' or '1'."""

    def __init__(self, predicate_expression: SomeSubstitutionsType) -> None:
        self.predicate = normalize_to_list_of_substitutions(predicate_expression)

    def evaluate(self, context: LaunchContext) -> bool:
        return _truth(perform_substitutions(context, self.predicate))


class UnlessCondition(IfCondition):
    """True when the expression evaluates to 'false' or '0'."""

    def evaluate(self, context: LaunchContext) -> bool:
        return not super().evaluate(context)


__all__ = ['IfCondition', 'UnlessCondition']
