"""Ray token authentication: nobody who can merely reach the machine runs code in a cluster that Harness starts.

Ray's processes listen on every interface; without a token, whoever reaches the GCS port joins the cluster and runs
tasks as this user, with this user's files, environment and GPUs. Every cluster Harness starts therefore gets a
fresh token (`cluster_env`), and every driver that joins one presents the user's token (`join_env`). The token
travels only through the environment (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN), never on a command line (`ps` shows
those to every user) or in a file; it wins over a token file that an earlier `ray.init()` left in ~/.ray.

    eval "$(python -m pipeline.cluster.auth "$@")"   # slurm/sweep.sbatch: export a fresh token (or the opt-out)
"""
from __future__ import annotations

import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Sequence

MODE, TOKEN, TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
HOW_TO_JOIN = (f"set {TOKEN} to the cluster's token (or {TOKEN_PATH} to a file holding it, readable only by you)")
_warned = False


def opt_out_reason(auth: bool = True) -> str | None:
    """Why token authentication is off: `cluster.auth=false` (auth False) or an exported RAY_AUTH_MODE=disabled;
    None when it is on."""
    if not auth:
        return "cluster.auth=false"
    if os.environ.get(MODE, "").lower() == "disabled":
        return f"{MODE}=disabled"
    return None


def warn_opt_out(reason: str) -> None:
    """The one line an opt-out prints (once per process)."""
    global _warned
    if not _warned:
        print(f"warning: Ray token authentication is off ({reason}): anyone who can reach this machine can run "
              f"code as {getpass.getuser()} while the sweep runs", file=sys.stderr, flush=True)
        _warned = True


def cluster_env(auth: bool = True) -> dict[str, str]:
    """The auth variables for every process of a cluster Harness starts and for its drivers: a fresh token, or
    RAY_AUTH_MODE=disabled (with the warning) when the user opted out."""
    reason = opt_out_reason(auth)
    if reason:
        warn_opt_out(reason)
        return {MODE: "disabled"}
    return {MODE: "token", TOKEN: secrets.token_hex(32)}


def has_user_token() -> bool:
    """Whether Ray will find a token here: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (its order)."""
    return bool(os.environ.get(TOKEN) or os.environ.get(TOKEN_PATH)
                or (Path.home() / ".ray" / "auth_token").is_file())


def join_env(auth: bool = True) -> dict[str, str]:
    """The auth variables for a driver that joins an existing cluster: token mode with the user's own token when
    there is one (Ray turns it on by itself only for address=auto); nothing to change otherwise. No warning on an
    opt-out: whoever started the cluster chose (sweep.sbatch warns in its log)."""
    if opt_out_reason(auth):
        return {MODE: "disabled"}
    return {MODE: "token"} if has_user_token() and MODE not in os.environ else {}


def use_here(env: dict[str, str]) -> None:
    """Put `env` into this process's environment before ray.init: the Ray processes it starts inherit it. Ray reads
    RAY_AUTH_MODE when imported and caches the token once read: make it read both again (as ray.init does itself
    when it turns token mode on)."""
    os.environ.update(env)
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def is_refusal(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is a cluster refusing this process's token."""
    while error is not None:
        if type(error).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _opted_out_in(overrides: Sequence[str]) -> bool:
    """Whether the Hydra overrides of a sweep set cluster.auth to false (bad overrides: left to jobs.sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - jobs.sweep reports them, with the usual one line
        return False
    return any(o.key_or_group == "cluster.auth" and str(o.value()).lower() == "false" for o in parsed)


def main(argv: Sequence[str] | None = None) -> None:
    """Print `export` lines for a shell to eval: the variables of `cluster_env`, given a sweep's overrides."""
    env = cluster_env(auth=not _opted_out_in(sys.argv[1:] if argv is None else argv))
    print("export " + " ".join(f"{key}={value}" for key, value in env.items()))


if __name__ == "__main__":
    main()
