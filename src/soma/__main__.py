from soma.cli.main import app

app(prog_name="soma")
