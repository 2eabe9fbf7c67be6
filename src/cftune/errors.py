"""One exception type per kind of user mistake, each raised where the input is read."""


class CftuneError(Exception):
    """Base class: every error cftune raises on purpose is one of these."""


class ConfigError(CftuneError):
    """A setting that cftune does not accept: a recipe file, a --set override, a function's argument.

    The message names the setting, and the recipe file when the value came from one. With ``setting`` (an
    argument's name, e.g. "tasks"), the message starts "tasks: ..."; the command line shows the flag that sets
    it instead ("--tasks: ...").
    """

    def __init__(self, message: str, setting: str | None = None):
        self.setting = setting
        super().__init__(f"{setting}: {message}" if setting else message)


class ModelSourceError(CftuneError):
    """A --model / --adapter value that cftune cannot turn into an embedder."""


class OutputPathError(CftuneError):
    """An output location (--out) that cftune may not or cannot write; found before any work."""


class RunBusyError(CftuneError):
    """A run folder that another live cftune process is writing."""


class DiskFullError(CftuneError):
    """The disk filled up while cftune wrote a file; what was complete before is kept."""


class DataFormatError(CftuneError):
    """A data file (or hub dataset) whose content is not what its format promises.

    The message always starts with ``<file>:<line>:`` so an editor can jump to the culprit.
    """

    def __init__(self, source: str, line: int | None, problem: str):
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}")
