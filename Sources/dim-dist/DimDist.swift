import ArgumentParser

@main
struct DimDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dim-dist",
        abstract: "Deep InfoMax self-supervised representation learning, data-parallel over MPI.",
        subcommands: [Train.self, Eval.self, Encode.self, Plot.self, DataCommand.self, CheckpointCommand.self, CheckReference.self, Bench.self])
}
