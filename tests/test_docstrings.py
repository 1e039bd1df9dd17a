"""Every public name has a docstring that answers what a user asks (`help(fastnn.X)`)."""
import inspect

import fastnn
import fastnn.data


def public_members(obj):
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        yield name, member


def missing():
    for module in (fastnn, fastnn.data):
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.getdoc(obj):
                yield f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                for member_name, member in public_members(obj):
                    if not inspect.getdoc(member):
                        yield f"{module.__name__}.{name}.{member_name}"


def test_every_public_name_and_method_has_a_docstring():
    assert sorted(set(missing())) == []


def test_fit_documents_its_arguments():
    doc = inspect.getdoc(fastnn.Sequential.fit)
    for word in ("epochs", "batch_size", "validation_data", "callbacks", "shuffle", "seed", "verbose",
                 "initial_state", "TrainingDiverged"):
        assert word in doc
