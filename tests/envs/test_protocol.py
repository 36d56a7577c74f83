import pytest

from envs.protocol import Environment, EnvironmentLoadError, Instance, load_environment

GOOD = """
from envs.protocol import Environment

class Echo(Environment):
    name = "echo"
    def sample(self, rng, difficulty):
        return {"x": rng.randrange(100)}
    def prompt(self, instance):
        return f"say {instance['x']}"
    def reference(self, instance):
        return str(instance["x"])
    def score(self, instance, response):
        return float(response.strip() == str(instance["x"]))
"""

DUCK = """
class Duck:
    name = "duck"
    def sample(self, rng, difficulty): return {}
    def prompt(self, instance): return "p"
    def reference(self, instance): return "r"
    def score(self, instance, response): return 1.0

class Helper:  # not an environment: no methods
    pass
"""


def test_load_subclass():
    env = load_environment(GOOD)
    assert isinstance(env, Environment) and env.name == "echo"
    assert env.answer_format == "final_line"


def test_load_duck_typed():
    assert load_environment(DUCK).name == "duck"


def test_intermediate_base_is_not_counted():
    src = GOOD + "\nclass Echo2(Echo):\n    name = 'echo2'\n"
    assert load_environment(src).name == "echo2"


def test_no_class():
    with pytest.raises(EnvironmentLoadError, match="no environment class"):
        load_environment("x = 1\n")


def test_two_classes():
    src = DUCK + DUCK.replace("Duck", "Goose").replace("Helper", "H2")
    with pytest.raises(EnvironmentLoadError, match="Duck, Goose"):
        load_environment(src)


def test_syntax_error_has_line():
    with pytest.raises(EnvironmentLoadError, match=r"syntax error in my\.py at line 3"):
        load_environment("a = 1\nb = 2\ndef (:\n", filename="my.py")


def test_import_time_exception():
    with pytest.raises(EnvironmentLoadError, match=r"line 2: ZeroDivisionError"):
        load_environment("x = 1\ny = 1 / 0\n")


def test_system_exit_at_import_is_caught():
    with pytest.raises(EnvironmentLoadError, match="SystemExit"):
        load_environment("import sys\nsys.exit(1)\n")


def test_empty_name_rejected():
    with pytest.raises(EnvironmentLoadError, match="name must be"):
        load_environment(GOOD.replace('name = "echo"', 'name = ""'))


def test_base_methods_raise():
    with pytest.raises(NotImplementedError):
        Environment().score({}, "")


def test_instance_round_trip():
    inst = Instance("echo", 3, 1, {"x": 5}, "say 5", "5")
    d = inst.to_dict()
    assert Instance.from_dict({**d, "extra": 1}) == inst


def test_a_failed_load_leaves_no_module_behind():
    import sys

    before = {m for m in sys.modules if m.startswith("_evoforge_env")}
    for source in ("x = 1\n", "class A:\n    name = 'a'\n    def sample(self, r, d): pass\n"
                   "    def prompt(self, i): pass\n    def reference(self, i): pass\n    def score(self, i, r): pass\n"
                   "    def __init__(self): raise ValueError('no')\n"):
        with pytest.raises(EnvironmentLoadError):
            load_environment(source)
    assert {m for m in sys.modules if m.startswith("_evoforge_env")} == before
