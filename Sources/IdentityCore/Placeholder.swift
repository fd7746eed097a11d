// IdentityCore: see the files of this folder.
