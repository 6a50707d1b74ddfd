"""The one C extension (server/media/_rtp.c, the forwarding path's RTP write); the rest of
the project is declared in pyproject.toml. ``optional``: where no C compiler or Python
headers are, the install goes on and server/media/rtpout.py writes in Python instead."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "server.media._rtp",
            ["server/media/_rtp.c"],
            optional=True,
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
        )
    ]
)
