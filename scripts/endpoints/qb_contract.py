"""What the Python wrappers of scripts/endpoints/ share: reading the
contract's QB_* variables with a clear error (docs/endpoints.md), and
loading a PEM chain leaf first. Also used by scripts/interop/."""

import os
import sys


class Contract:
    """Errors name the wrapper (`name`) and exit with status 2."""

    def __init__(self, name):
        self.name = name

    def die(self, msg):
        print(f"{self.name}: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)

    def env(self, var):
        value = os.environ.get(var, "")
        if not value:
            self.die(f"environment variable {var} is not set (see docs/endpoints.md)")
        return value


def leaf_and_chain(certs, what):
    """(leaf, the CAs after it) of a list of cryptography x509 certificates:
    a PEM may list the CA first (quicbench's trust PEM); servers must present
    the leaf first. Raises SystemExit naming `what` without a leaf."""
    from cryptography import x509

    def is_ca(c):
        try:
            return c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    leaves = [c for c in certs if not is_ca(c)]
    if not leaves:
        raise SystemExit(f"{what}: no leaf certificate")
    return leaves[0], [c for c in certs if c is not leaves[0] and is_ca(c)]
