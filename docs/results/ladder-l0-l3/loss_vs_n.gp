# loss_vs_n.gp: plots loss_vs_n.dat. Rendered by scalinglab report with
#   gnuplot -e "set terminal pdfcairo size 5in,3.4in font 'Sans,10'; set output 'loss_vs_n.pdf'" loss_vs_n.gp
#   gnuplot -e "set terminal pngcairo size 1100,750 font 'Sans,13'; set output 'loss_vs_n.png'" loss_vs_n.gp
# (run in this directory); restyle here and rerun.
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key outside right top spacing 1.1 box lc rgb '#bbbbbb'
set format x '10^{%L}'
set logscale xy
set xlabel 'non-embedding parameters N'
set ylabel 'final held-out loss (nats/token)'
set format y '%g'
set title 'Final loss vs N (points: runs; lines: fitted laws, dense solid, hybrid dashed)'
set xrange [569429:2.39839e+07]
set xtics ('1M' 1e+06, '2M' 2e+06, '3M' 3e+06, '5M' 5e+06, '10M' 1e+07, '20M' 2e+07)
set yrange [0.50397:2.46754]
set ytics ('0.6' 0.6, '0.8' 0.8, '1' 1, '1.2' 1.2, '1.5' 1.5, '2' 2)
plot 'loss_vs_n.dat' index 0 with points pt 7 ps 1.2 lc 1 title 'dense, D/N = 5', \
     'loss_vs_n.dat' index 1 with lines lc 1 dt 1 notitle, \
     'loss_vs_n.dat' index 2 with points pt 7 ps 1.2 lc 2 title 'dense, D/N = 10', \
     'loss_vs_n.dat' index 3 with lines lc 2 dt 1 notitle, \
     'loss_vs_n.dat' index 4 with points pt 7 ps 1.2 lc 3 title 'dense, D/N = 20', \
     'loss_vs_n.dat' index 5 with lines lc 3 dt 1 notitle, \
     'loss_vs_n.dat' index 6 with points pt 7 ps 1.2 lc 4 title 'dense, D/N = 40', \
     'loss_vs_n.dat' index 7 with lines lc 4 dt 1 notitle, \
     'loss_vs_n.dat' index 8 with points pt 5 ps 1.2 lc 1 title 'hybrid, D/N = 5', \
     'loss_vs_n.dat' index 9 with lines lc 1 dt 2 notitle, \
     'loss_vs_n.dat' index 10 with points pt 5 ps 1.2 lc 2 title 'hybrid, D/N = 10', \
     'loss_vs_n.dat' index 11 with lines lc 2 dt 2 notitle, \
     'loss_vs_n.dat' index 12 with points pt 5 ps 1.2 lc 3 title 'hybrid, D/N = 20', \
     'loss_vs_n.dat' index 13 with lines lc 3 dt 2 notitle, \
     'loss_vs_n.dat' index 14 with points pt 5 ps 1.2 lc 4 title 'hybrid, D/N = 40', \
     'loss_vs_n.dat' index 15 with lines lc 4 dt 2 notitle
