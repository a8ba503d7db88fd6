import DIMCore
import DIMIO
import Foundation

/// Resolves a checkpoint argument: a file, a run directory, or its checkpoints directory.
func resolveCheckpoint(_ path: String) throws -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path,
                                         isDirectory: &isDir) else { throw DIMError("\(path): no such checkpoint") }
    if !isDir.boolValue { return path }
    for dir in [path, path + "/checkpoints"] {
        if let latest = CheckpointDirectory(path: dir).latest() { return latest }
    }
    throw DIMError("\(path): no checkpoint 'latest' pointer in it or in its checkpoints/")
}
