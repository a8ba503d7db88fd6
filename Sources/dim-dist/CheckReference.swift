import Foundation
import ArgumentParser
import DIMCore
import DIMTrain

struct CheckReference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-reference",
        abstract: "Compare every activation, loss, gradient and Adam step with PyTorch reference files.",
        discussion: "Exits non-zero when any tensor is outside the tolerance of the reference README.")

    @Argument(help: "Reference files (.h5) in the dim-dist-reference/1 format.")
    var files: [String]
    @Option(help: "GEMM precision to check: fp32 (the reference tolerance) or bf16 (a looser, documented one).")
    var precision: Precision = .fp32

    func run() throws {
        var failed: [String] = []
        for path in files {
            print("\(path):")
            var check = ReferenceCheck(path: path, precision: precision)
            do {
                try check.run()
            } catch {
                printError("error: \(error)")
                failed.append(path)
                continue
            }
            let bad = check.lines.filter { !$0.passed }.count
            print("  \(check.lines.count - bad) of \(check.lines.count) comparisons within tolerance")
            if !check.passed { failed.append(path) }
        }
        if !failed.isEmpty {
            printError("check-reference: FAILED for \(failed.joined(separator: ", "))")
            throw ExitCode(1)
        }
        print("check-reference: all \(files.count) file(s) match")
    }
}
