// ProxyTransport: see the files of this folder.
