/// Hearth's version, announced by nodes and shown by the CLI.
public enum HearthVersion {
    public static let current = "0.1.0"
}
