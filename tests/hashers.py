"""A password hasher for the test process: Django's own hashes, each computed once.

The suite creates hundreds of users with a handful of passwords, and one PBKDF2 hash at Django's
default work factor costs about half a second on the CI machine: hashing was most of the setup
time of many tests. Making the hashes weaker (or MD5) would speed them up too, but servers under
test run in other processes with the production hashers: they must verify the users a test
creates exactly as in production, without rewriting their passwords at login.

So this hasher writes real ``pbkdf2_sha256`` hashes with the default iterations, but with one fixed
salt, and remembers each result: the second user with the same password costs nothing, and so
does checking it again in this process.
"""

from __future__ import annotations

import functools

from django.contrib.auth.hashers import PBKDF2PasswordHasher

# Long enough for Django not to ask for a new salt (128 bits of alphanumerics).
_SALT = "omnirouterTestSuiteSalt0"


class MemoizedPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    def salt(self) -> str:
        return _SALT

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return _encode(password, salt, iterations or self.iterations)


@functools.cache
def _encode(password: str, salt: str, iterations: int) -> str:
    return PBKDF2PasswordHasher().encode(password, salt, iterations)
