from ubdiff_onnx.cli.main import main

main()
