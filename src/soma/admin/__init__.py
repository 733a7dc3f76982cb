"""Operating an instance as a whole: backup and restore (``soma admin backup``/``restore``)."""

from soma.admin._archive import BackupManifest, BackupRefused
from soma.admin.backup import BackupResult, RestoreResult, create_backup, restore_backup

__all__ = [
    "BackupManifest",
    "BackupRefused",
    "BackupResult",
    "RestoreResult",
    "create_backup",
    "restore_backup",
]
