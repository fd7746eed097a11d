/// `ReasonCode` is the failure type of the model's `Result`s (``PathNormalizer``, ``HostNormalizer``).
extension ReasonCode: Error {}
