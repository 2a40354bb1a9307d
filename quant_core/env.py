"""The environment measurements were taken in, recorded once per comparison."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from importlib import metadata

_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "litert-quantizer", "tflite-micro", "numpy")

PORTABILITY_NOTES = (
    "Latency was measured on this machine's x86 CPU with XNNPACK; phones run ARM kernels "
    "whose relative speeds differ, so treat ratios as indicative and measure on the device.",
    "Dynamic-range models use hybrid kernels that can be slower than float32 on x86 here "
    "while being faster on many ARM phones.",
    "16x8 models run on reference (unoptimized) kernels on most CPUs, typically 50-100x "
    "slower than int8; their latency here says little about dedicated hardware.",
    "Int8 models are what NPUs, DSPs and the Edge TPU need; only integer-only models "
    "avoid falling back to the CPU on them.",
)


@dataclass(frozen=True)
class Environment:
    """Versions, CPU and threads."""

    python: str
    platform: str
    machine: str
    cpu: str
    cpu_count: int
    threads: int
    packages: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = PORTABILITY_NOTES


def describe_environment(*, threads: int) -> Environment:
    """Collects versions (without importing TensorFlow) and the CPU model."""
    python, system, machine = _platform()
    return Environment(python=python, platform=system, machine=machine, cpu=_cpu_model(),
                       cpu_count=os.cpu_count() or 1, threads=threads, packages=package_versions())


@functools.cache
def _platform() -> tuple[str, str, str]:
    """Python version, OS description and machine (slow to compute; fixed for a process)."""
    return platform.python_version(), platform.platform(), platform.machine()


@functools.cache
def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or None (looked up once per process)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def package_versions() -> tuple[tuple[str, str], ...]:
    """(package, version) of the installed packages that build and run variants; part of every cache key."""
    return tuple((name, version) for name in _PACKAGES if (version := installed_version(name)))


@functools.cache
def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
