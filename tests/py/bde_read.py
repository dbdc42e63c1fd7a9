"""Unlocks a BitLocker volume with libbde (pybde, libyal's reader, not seedship's) and writes
the decrypted volume to a file, for an NTFS reader to read.

    bde_read.py IMAGE OUT [--password] < secret

The secret (a recovery password, or with --password a user password such as a Data Box
passkey) is read from standard input, never from the command line. Prints what libbde says of
the volume as one JSON line; exits 3 when the secret does not unlock it."""
import json
import sys

import pybde


def main() -> int:
    image, out = sys.argv[1], sys.argv[2]
    secret = sys.stdin.readline().rstrip("\n")
    volume = pybde.volume()
    if "--password" in sys.argv[3:]:
        volume.set_password(secret)
    else:
        volume.set_recovery_password(secret)
    volume.open(image)
    said = {
        "libbde": pybde.get_version(),
        "description": volume.get_description(),
        "encryption_method": volume.get_encryption_method(),
        "key_protectors": volume.get_number_of_key_protectors(),
    }
    if volume.is_locked():
        print(json.dumps(dict(said, unlocked=False)))
        return 3
    size = volume.get_size()
    with open(out, "wb") as f:
        f.truncate(size)
        offset = 0
        while offset < size:
            n = min(4 << 20, size - offset)
            data = volume.read_buffer_at_offset(n, offset)
            if data.count(0) != len(data):
                f.seek(offset)
                f.write(data)
            offset += n
    volume.close()
    print(json.dumps(dict(said, unlocked=True, size=size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
