"""gpu-probe: what one replica sees of the machine's GPUs.

`setup` allocates PROBE_SETUP_GB of GPU memory (default 4) and touches it, as
loading weights would; `run` reports CUDA_VISIBLE_DEVICES, the SDK's
`metadata.gpu_ids`, what torch sees, and the pid; `unload` frees the memory.
Without torch or CUDA it still answers (the placement bench's mechanics can
be checked on a CPU with a declared inventory).
"""
import os
import time
from typing import List, Optional

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput
from pydantic import Field


class ProbeInput(BaseAppInput):
    note: str = Field(default="", description="echoed back, to tell calls apart")


class ProbeOutput(BaseAppOutput):
    cuda_visible_devices: Optional[str] = Field(description="the replica's CUDA_VISIBLE_DEVICES (None: unset)")
    gpu_ids: Optional[List[str]] = Field(description="metadata.gpu_ids given to setup")
    device_count: int = Field(description="GPUs torch sees (0 without torch or CUDA)")
    device_names: List[str]
    held_gb: float = Field(description="GPU memory held since setup")
    setup_seconds: float
    pid: int
    note: str


class App(BaseApp):
    async def setup(self, metadata):
        started = time.perf_counter()
        self.gpu_ids = list(metadata.gpu_ids) if metadata.gpu_ids is not None else None
        self.block = None
        self.held_gb = 0.0
        try:
            import torch
        except ImportError:
            torch = None
        self.torch = torch
        if torch is not None and torch.cuda.is_available():
            gb = float(os.environ.get("PROBE_SETUP_GB", "4"))
            self.block = torch.ones(int(gb * 1e9), dtype=torch.uint8, device="cuda")
            torch.cuda.synchronize()
            self.held_gb = gb
        self.setup_seconds = time.perf_counter() - started

    async def run(self, input_data: ProbeInput) -> ProbeOutput:
        torch = self.torch
        count = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
        return ProbeOutput(
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            gpu_ids=self.gpu_ids,
            device_count=count,
            device_names=[torch.cuda.get_device_name(i) for i in range(count)],
            held_gb=self.held_gb,
            setup_seconds=round(self.setup_seconds, 4),
            pid=os.getpid(),
            note=input_data.note,
        )

    async def unload(self):
        self.block = None
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
