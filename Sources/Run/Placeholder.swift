public let embeddedCount = PackageResources.purgatory_ro.count
