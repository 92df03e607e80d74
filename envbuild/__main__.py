from envbuild.cli import main

main(prog_name="envbuild")
