"""Stand-in for ``launch_ros.substitutions.FindPackageShare``."""

from __future__ import annotations

from rpl_bringup.launch_shim.core import (
    LaunchContext,
    SomeSubstitutionsType,
    Substitution,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)


class FindPackageShare(Substitution):
    """The share directory of a package (``<prefix>/share/<package>``)."""

    def __init__(self, package: SomeSubstitutionsType) -> None:
        self.package = normalize_to_list_of_substitutions(package)

    def perform(self, context: LaunchContext) -> str:
        return context.find_package_share(perform_substitutions(context, self.package))


__all__ = ['FindPackageShare']
