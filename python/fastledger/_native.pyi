# Hand-written stub for the Rust extension module built from rust/python. Keep it in step with
# rust/python/src/lib.rs: `python -m mypy.stubtest fastledger._native` compares the two.

from typing import Final, final

# PyO3 lists every name the module adds in __all__; stubtest checks that the stub lists the same.
__all__ = ["RECORD_SIZE", "Engine", "__version__"]

__version__: Final[str]
RECORD_SIZE: Final[int]

@final
class Engine:
    def __init__(self) -> None: ...
