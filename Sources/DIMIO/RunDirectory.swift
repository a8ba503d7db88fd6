import Foundation
import DIMCore

/// A run's output directory, as `dim-dist train --out RUN` lays it out: `checkpoints/`
/// (CheckpointDirectory: `ckpt-<step>.h5` and the `latest` pointer), `metrics.jsonl` (one record per
/// logging step, and the probes' records) and the TensorBoard event file. The one place that
/// knows the layout and turns what a user passes on the command line into it.
public struct RunDirectory {
    public let path: String

    public init(path: String) { self.path = path }

    /// From what a user passes: the run directory itself, its `checkpoints/` directory, a file in
    /// either (a checkpoint, `metrics.jsonl`).
    public init(resolving argument: String) {
        var p = argument
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: p, isDirectory: &isDir)
        if exists && !isDir.boolValue { p = (p as NSString).deletingLastPathComponent }
        if (p as NSString).lastPathComponent == "checkpoints" { p = (p as NSString).deletingLastPathComponent }
        path = p.isEmpty ? "." : p
    }

    public func checkpoints(keep: Int = 3) -> CheckpointDirectory {
        CheckpointDirectory(path: path + "/checkpoints", keep: keep)
    }
    public var metrics: String { path + "/metrics.jsonl" }

    /// A checkpoint argument as users give it: a file (as it is), or a run or checkpoints
    /// directory (the checkpoint `latest` names there).
    public static func checkpoint(_ argument: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDir) else {
            throw DIMError("\(argument): no such checkpoint")
        }
        if !isDir.boolValue { return argument }
        guard let latest = RunDirectory(resolving: argument).checkpoints().latest() else {
            throw DIMError("\(argument): no checkpoint 'latest' pointer in it or in its checkpoints/")
        }
        return latest
    }

    /// `metrics.jsonl` itself, or the one of a run (`plot` takes either).
    public static func metrics(_ argument: String) -> String {
        argument.hasSuffix(".jsonl") ? argument : RunDirectory(resolving: argument).metrics
    }
}
