"""`python -m services.common.nameko_cli <command> ...`: the `nameko` command (`test`, `run`,
`shell`) without eventlet's deprecation notice.

We chose eventlet on purpose (nameko 2.14, the last stable nameko, is built on it); the notice
it prints at import is for new projects, and `make test` and `make bench` run nameko often.
Its CLI also imports pkg_resources, which is why setuptools is pinned below 81 (pyproject.toml);
that notice says the same thing again.
"""
import sys
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from nameko.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "nameko"
    sys.exit(main())
