# pytest puts this directory on the import path, so the tests import `bank` as an installed
# project would.
