"""The exceptions fastnn raises that users catch, in one place (imports nothing of fastnn).

Bad arguments raise the built-in TypeError/ValueError with a message naming the argument;
these classes are for the cases a caller may want to tell apart."""


class ModelFileError(ValueError):
    """A file that is not a fastnn model, or is truncated, corrupt or too large to load."""


class CheckpointError(ModelFileError):
    """A file without training state, or a checkpoint that does not fit the run it resumes."""


class TrainingDiverged(FloatingPointError):
    """The loss (or the weights) became NaN or infinite; the message names the step."""


class UsageError(Exception):
    """A bad command-line argument or input: the CLI prints it as one line, exit code 2."""


class ConfigError(ValueError):
    """A model or run config (a dict, a JSON file) that does not follow the schema; the message
    names the key, what it holds and what was expected."""


MAX_SHOWN = 200  # characters of a value from a file or argument echoed in a message


def shown(value):
    """repr(value) cut to MAX_SHOWN characters: a message stays one readable line whatever a
    file holds (a 50 MiB class name must not become a 50 MB error)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"... ({len(text):,} characters)"
