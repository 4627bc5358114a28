"""Built-in space files and the rule that finds a script's space file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from centaur_hpo.script import read_knobs
from centaur_hpo.space import SearchSpace, SpaceError, build_space, load_space_file

#: Names of the space files shipped with the package (``--space autoresearch``).
BUILTIN = {"autoresearch": "autoresearch.toml"}


def builtin_path(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(BUILTIN[name])))


def find_space_file(script: str | Path, space: str | Path | None = None) -> Path | None:
    """The space file to use for ``script``.

    In order: ``space`` as a built-in name or a path; else ``<script stem>.space.toml`` or
    ``space.toml`` next to the script; else None (bounds are inferred).
    """
    if space is not None:
        if str(space) in BUILTIN:
            return builtin_path(str(space))
        path = Path(space)
        if not path.is_file():
            raise SpaceError(
                f"space file {path} does not exist (built-in spaces: {', '.join(sorted(BUILTIN))})"
            )
        return path
    script = Path(script)
    for candidate in (
        script.with_name(script.stem + ".space.toml"),
        script.with_name("space.toml"),
    ):
        if candidate.is_file():
            return candidate
    return None


def space_for_script(
    script: str | Path, space: str | Path | None = None, tune: list[str] | None = None
) -> SearchSpace:
    """Build the search space of a script from its knobs and its space file, if any."""
    path = find_space_file(script, space)
    spec = load_space_file(path) if path else None
    return build_space(read_knobs(script), spec, source=str(path) if path else None, tune=tune)
