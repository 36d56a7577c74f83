"""Worker process running untrusted environment code: ``python -m envs.worker``.

Protocol: one JSON request per stdin line, one JSON response per stdout line.
Request:  {"id": int, "op": "ping"|"load"|"unload"|"sample"|"score", ...}
Response: {"id": ..., "ok": bool, "result": ..., "error": str|None}
  load   {"env_id", "source"}            -> {"name", "description", "answer_format"}
  unload {"env_id"}                      -> {"unloaded": bool, "loaded": int envs left}
  sample {"env_id", "seeds", "difficulty"} -> [{"seed","difficulty","data","prompt","reference"}]
  score  {"env_id", "items": [{"data", "response"}]} -> [float]; the response
         also carries "errors": [str|None] parallel to result. A failing item
         scores 0.0 with its error; the call as a whole still succeeds.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys

from envs.parsing import answer_text, format_answer
from envs.protocol import load_environment


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _sample(env, seeds, difficulty) -> list[dict]:
    if not isinstance(difficulty, int) or not all(isinstance(s, int) for s in seeds):
        raise ValueError("seeds must be a list of ints and difficulty an int")
    out = []
    for seed in seeds:
        data = env.sample(random.Random(seed), difficulty)
        if not isinstance(data, dict):
            raise TypeError(f"sample() must return a dict, got {type(data).__name__} (seed {seed})")
        try:
            # Round trip so prompt/reference see exactly what score will see.
            data = json.loads(json.dumps(data, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise ValueError(f"instance for seed {seed} is not JSON-serialisable: {e}") from None
        prompt, reference = env.prompt(data), env.reference(data)
        if not isinstance(prompt, str):
            raise TypeError(f"prompt() must return a str, got {type(prompt).__name__} (seed {seed})")
        if not isinstance(reference, str):  # an answer value: its text form, as a response in the env's format
            try:
                reference = format_answer(answer_text(reference), getattr(env, "answer_format", "final_line"))
            except TypeError as e:
                raise TypeError(f"reference() returned a {type(reference).__name__} (seed {seed}): {e}") from None
        out.append({"seed": seed, "difficulty": difficulty, "data": data,
                    "prompt": prompt, "reference": reference})
    return out


def _score_one(env, item) -> tuple[float, str | None]:
    try:
        s = env.score(item["data"], item["response"])
        if isinstance(s, (str, bytes)):
            raise TypeError(f"score() returned a {type(s).__name__}, not a number")
        s = float(s)
    except (Exception, SystemExit) as e:
        return 0.0, _err(e)
    if not math.isfinite(s):
        return 0.0, f"score() returned a non-finite value: {s}"
    return min(1.0, max(0.0, s)), None


def handle(req: dict, cache: dict) -> dict:
    """Answer one request; ``cache`` maps env_id to loaded environments."""
    resp = {"id": req.get("id") if isinstance(req, dict) else None,
            "ok": True, "result": None, "error": None}
    try:
        op = req["op"]
        if op == "ping":
            resp["result"] = "pong"
        elif op == "load":
            env = load_environment(req["source"], filename=f"<env:{req['env_id']}>")
            old, cache[req["env_id"]] = cache.get(req["env_id"]), env
            if old is not None:  # a reload under the same id: the old module goes
                sys.modules.pop(type(old).__module__, None)
            resp["result"] = {"name": env.name, "description": getattr(env, "description", ""),
                              "answer_format": getattr(env, "answer_format", "final_line")}
        elif op == "unload":  # forget the instance and its module (load_environment registered it)
            env = cache.pop(req["env_id"], None)
            if env is not None:
                sys.modules.pop(type(env).__module__, None)
            resp["result"] = {"unloaded": env is not None, "loaded": len(cache)}
        elif op in ("sample", "score"):
            if req["env_id"] not in cache:
                raise KeyError(f"environment {req['env_id']!r} is not loaded")
            env = cache[req["env_id"]]
            if op == "sample":
                resp["result"] = _sample(env, req["seeds"], req["difficulty"])
            else:
                pairs = [_score_one(env, item) for item in req["items"]]
                resp["result"] = [s for s, _ in pairs]
                resp["errors"] = [e for _, e in pairs]
        else:
            raise ValueError(f"unknown op {op!r}")
    except (Exception, SystemExit) as e:
        resp.update(ok=False, result=None, error=_err(e))
    return resp


def main() -> None:
    # Keep the protocol channels private: env code that prints, writes to
    # fd 1 or reads stdin must not corrupt or consume protocol lines.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = sys.stderr
    cache: dict = {}
    for line in proto_in:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            resp = {"id": None, "ok": False, "result": None, "error": f"bad request: {e}"}
        else:
            resp = handle(req, cache)
        try:
            text = json.dumps(resp, allow_nan=False)
        except (TypeError, ValueError) as e:
            text = json.dumps({"id": resp["id"], "ok": False, "result": None,
                               "error": f"response is not JSON-serialisable: {e}"})
        proto_out.write(text + "\n")
        proto_out.flush()


if __name__ == "__main__":
    main()
