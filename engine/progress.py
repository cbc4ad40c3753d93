"""Progress reporting: a tqdm bar on a terminal, a few plain log lines otherwise (CI, files)."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class Progress:
    """``update(**postfix)`` once per iteration; ``close()`` at the end. Silent when disabled."""

    LOG_LINES = 10

    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0) -> None:
        self.total, self.desc, self.count = total, desc, initial
        self.enabled = enabled
        interactive = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True,
                        mininterval=0.5) if interactive else None
        self.every = max(1, total // self.LOG_LINES)
        self.start, self.start_count = time.perf_counter(), initial

    def update(self, **postfix: str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif self.enabled and (self.count % self.every == 0 or self.count == self.total):
            rate = (self.count - self.start_count) / max(time.perf_counter() - self.start, 1e-9)
            fields = "  ".join(f"{k} {v}" for k, v in postfix.items())
            print(f"[{self.desc}] {self.count}/{self.total}  {fields}  ({rate:.1f} it/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
