"""fagan: MRI super-resolution with FA-GAN (Jiang et al., Comput. Med. Imaging Graph. 2021)."""

__version__ = "0.1.0"


class FaganError(ValueError):
    """A user-facing error: bad input, a missing file, an impossible request.

    Subclasses ``ValueError`` so library callers can catch either; the CLI prints its message
    on one line and exits non-zero.
    """
